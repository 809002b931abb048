"""The rules extractor's vocabulary: keyword and pattern tables, English and Chinese (data only).

English cues are regular-expression fragments matched case-insensitively on word boundaries;
Chinese cues are regex fragments matched as written (Chinese text has no word boundaries); most
are plain words. Extend these tables rather than the reader code in :mod:`triage.extraction.rules`.
"""

from __future__ import annotations

#: The shipped schema's fields the rules read; any other schema field gets a neutral value.
PROBLEM_TYPE_FIELD = "problem_type"
DEVICE_MODEL_FIELD = "device_model"
URGENT_LEVEL_FIELD = "urgent_level"
REQUIREMENTS_FIELD = "user_requirements"


#: Verbs that, after "can't" / "won't" / "didn't" / "not", describe something failing.
FAILING_VERBS = (
    r"work(?:s|ed|ing)?", r"function(?:s|ing)?", r"connect(?:s|ed|ing)?", r"turn(?:s|ed)? on",
    r"switch(?:es)? on", r"power(?:s)? (?:on|up)", r"charg(?:e|es|ed|ing)", r"start(?:s|ed)?",
    r"boot(?:s|ed)?", r"load(?:s|ed)?", r"open(?:s|ed)?", r"sync(?:s|ed)?", r"pair(?:s|ed)?",
    r"respond(?:s|ed|ing)?", r"go(?:es)? through", r"log ?in", r"sign ?in", r"top ?up",
    r"print(?:s|ed)?", r"play(?:s|ed)?", r"display(?:s|ed)?", r"detect(?:s|ed)?",
    r"recogni[sz](?:e|es|ed)", r"accept(?:s|ed)?", r"approv(?:e|es|ed)", r"give(?:s)? (?:back|me|out)",
    r"let me", r"allow(?:s|ed)? me", r"use", r"withdraw", r"take (?:out|money|cash)", r"come out",
    r"remove", r"unlock", r"send(?:s)?", r"receiv(?:e|es|ed)", r"pay", r"download(?:s|ed)?",
    r"install(?:s|ed)?", r"updat(?:e|es|ed)", r"upgrad(?:e|es|ed)", r"access", r"register",
    r"complet(?:e|ed)", r"get", r"return(?:s|ed)?", r"transfer", r"hear", r"dial(?: out)?",
)

#: Cues per ``problem_type``. ``en``: regex fragments (case-insensitive, word-bounded);
#: ``zh``: regex fragments, mostly plain words (simplified and a few traditional forms).
PROBLEM_TYPE_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "complaint": {
        "en": (
            r"complain(?:t|ts|ed|ing)?", r"terrible", r"horrible", r"awful", r"worst",
            r"unacceptable", r"ridiculous", r"outrageous", r"disgust(?:ed|ing)", r"sucks",
            r"disappoint(?:ed|ing|ment)", r"dissatisfied", r"unsatisfied", r"unhappy",
            r"not (?:happy|satisfied|helpful)", r"unhelpful",
            r"(?:poor|bad|lousy) (?:service|quality|support|attitude|experience)",
            r"rude", r"scam(?:med)?", r"rip(?:ped)?[- ]?off", r"cheat(?:ed|ing)?",
            r"(?:lodg|fil|mak|submitt?|open|register)(?:e|es|ed|ing)? (?:a |an |as |my )?(?:\w+ )?"
            r"(?:claim|complaint|reclam\w*|grievance)",
            r"claim against", r"reclam\w*", r"grievance",
            r"(?:want|demand|need|give me|deserve|get) (?:a |my |full |the )?"
            r"(?:refund|money back|compensation)",
            r"refund me", r"compensate me", r"furious", r"angry", r"fed up", r"sick (?:and tired )?of",
            r"waste of (?:time|money)", r"useless", r"never (?:again|buy)", r"report you", r"lawyer",
            r"sue you", r"consumer (?:protection|rights)",
            r"no one (?:has )?(?:helped|replied|responded|answered|contacted)",
            r"annoy(?:ed|ing)", r"irritat(?:ed|ing)", r"frustrat(?:ed|ing)", r"pathetic", r"shameless",
            r"shame on", r"damn you", r"how dare", r"rubbish", r"(?:pass|passed|passing) the buck",
            r"legal (?:letter|action)", r"overcharg\w*", r"arbitrar(?:y|ily)",
            r"(?:extremely|very|so|really|too) (?:poor|bad)",
        ),
        "zh": (
            "投诉", "投訴", "太差", "很差", "真差", "差劲", "垃圾", "退款", "退钱", "赔偿", "骗子",
            "欺骗", "坑爹", "坑人", "不满", "失望", "气死", "恶心", "态度差", "态度恶劣", "举报",
            "维权", "315", "工信部", "消协", "忍无可忍", "不负责", "无语", "乱扣费", "乱收费",
            "霸王条款", "欺诈", "忽悠", "敷衍", "推诿", "没人管", "没有人管", "没人理",
            "没有人和我联系", "什么破", "太坑", "坑了", "服务差", "差评", "凭什么",
            "太过分", "过分了",
        ),
    },
    "device_fault": {
        "en": (
            r"(?:can'?t|cannot|can not|couldn'?t|could not|unable to|won'?t|wouldn'?t|doesn'?t|does not"
            r"|don'?t|do not|didn'?t|did not|isn'?t|is not|aren'?t|wasn'?t|hasn'?t|haven'?t|not"
            r"|no longer|fail(?:s|ed)? to)"
            r"(?: (?!know|understand|sure|think|remember|see|tell|how|what|why|where|when|if|whether)"
            r"[\w']+){0,3}? (?:be )?(?:" + "|".join(FAILING_VERBS) + r")",
            r"(?:stop(?:ped|s)?|quit) working", r"broken", r"broke(?: down)?", r"damaged", r"cracked",
            r"faulty", r"defective", r"malfunction(?:s|ing)?", r"errors?", r"bugs?", r"glitch(?:es)?",
            r"crash(?:es|ed|ing)?", r"freez(?:e|es|ing)", r"frozen", r"hangs?",
            r"keeps? (?:rebooting|restarting|crashing|freezing|disconnecting|dropping|shutting down)",
            r"(?:reboot|boot) ?loop", r"(?:black|blank|white) screen", r"shut(?:s)? (?:down|off)",
            r"no (?:signal|sound|power|response|network|internet|connection|display)",
            r"dead", r"overheat(?:s|ing)?", r"declin(?:ed|es|ing)", r"rejected", r"denied",
            r"blocked", r"locked", r"stuck", r"trapped", r"swallowed", r"ate (?:my|the)",
            r"fail(?:s|ed|ing|ure)?", r"hacked", r"compromised", r"unauthori[sz]ed",
            r"without (?:my )?(?:permission|consent|authori[sz]ation|knowledge)",
            r"someone (?:else )?(?:is |has )?(?:using|used|accessed)",
            r"too many (?:times|attempts|tries)", r"unable to", r"not able to", r"unblock\w*",
            r"fraud\w*", r"keeps? (?:getting )?(?:returned|declined|rejected|failing)",
            r"problems?", r"issues?", r"troubles?", r"something (?:is )?wrong", r"out of order",
            r"drains?", r"(?:very |really |too |so |extremely )?slow",
            r"what'?s (?:going on|wrong|happening)", r"what is (?:going on|wrong|happening)",
        ),
        "zh": (
            "无法", "無法", "不能用", "用不了", "坏了", "壞了", "故障", "死机", "當機", "开不了机",
            "开不开机", "不能开机", "黑屏", "白屏", "花屏", "重启", "卡顿", "卡死", "闪退", "没信号",
            "无信号", "信号差", "信号不好", "没网", "断网", "上不了网", "连不上", "连接不上",
            "充不进电", "充不了电", "不充电", "发烫", "耗电", "掉线", "失灵", "进水", "碎屏", "报错",
            "出错", "错误", "异常", "不好使", "没反应", "没有反应", "不显示", "打不开", "打不了",
            "没声音", "没有声音", "出问题", "有问题", "毛病", "不正常", "自动关机", "关机",
            "网速慢", "停机", "不见了", "登不上", "登录不了", "不能使用", "收不到", "发不出",
            "没声", "碎了", "充不进", "无网络", "没有网络", "无服务", "没有服务", "很慢", "太慢",
            "特别慢", r"[听看找收搜连打拨]不到", "摔坏", "不出来", "出不来", "还是不行", "不行了",
            "怎么回事", "失败", r"(?:信号|网络|网速|宽带|电池|屏幕|系统).{0,4}(?:差|弱|不好|慢|问题|不稳定|下降)",
            r"(?<![受少免大忘])不了", r"(?<!能)不能(?!不)",
        ),
    },
    "consult": {
        "en": (
            r"how (?:do|does|can|could|would|should|to|long|much|many|often|soon|come)",
            r"what (?:is|are|do|does|should|can|kind|type|types|time|to|i|if)", r"where (?:can|do|is|are)",
            r"when (?:will|can|do|does|is|are)", r"which", r"is it possible", r"(?:can|could|may) i",
            r"am i able", r"do you (?:have|offer|support|accept|ship|provide|know|deliver)",
            r"(?:want|wanted|would like|'d like) to (?:ask|know)", r"wondering", r"questions?",
            r"information", r"info", r"tell me", r"explain", r"(?:is|are) there", r"any way to",
            r"help", r"assist(?:ance)?", r"instructions?", r"guide", r"set(?:ting)? ?up", r"configure",
            r"inquir(?:y|e)", r"enquir(?:y|e)", r"status", r"waiting for", r"where is my",
            # service requests: the customer wants something done (cancel, change, track ...)
            r"(?:want|wanted|wanna|need|would like|'d like|have) to", r"cancel\w*",
            r"chang(?:e|es|ed|ing)", r"updat(?:e|es|ing)", r"edit(?:s|ing)?", r"modif(?:y|ying)",
            r"delet(?:e|ing)", r"remov(?:e|al|ing)", r"clos(?:e|ing)", r"open(?:ing)?",
            r"creat(?:e|ing)", r"track(?:ing)?", r"check(?:ing)?", r"reset(?:ting)?",
            r"recover(?:y|ing)?", r"retriev(?:e|al|ing)", r"restor(?:e|ing)",
            r"(?:un)?subscri(?:be|bing|ption)", r"sign(?:ing)? up", r"regist(?:er|ering|ration)",
            r"order(?:ing)?", r"buy(?:ing)?", r"purchas(?:e|ing)", r"download(?:ing)?",
            r"switch(?:ing)?", r"activat(?:e|ing|ion)", r"deliver(?:y|ies)?", r"ship(?:ping|ment|ments)?",
            r"get in touch", r"contact(?:ing)?", r"apply for", r"invoices?", r"bills?", r"refunds?",
            r"reimburse\w*", r"rebates?", r"forg[eo]t(?:ten)?", r"need (?:a|an|my|the|some|new)",
            r"please", r"let me know",
        ),
        "zh": (
            "怎么", "怎麼", "怎样", "如何", "请问", "請問", "咨询", "諮詢", "想问", "问一下",
            "问下", "想知道", "能不能", "可以吗", "是否", "多少", "哪里", "哪裡", "什么时候",
            "吗？", r"吗\?", "嗎", "有没有", "是不是", "办理", "设置", "取消", "修改", "更改", "变更",
            "查询", "开通", "注销", "退订", "订购", "购买", "绑定", "解绑", "充值", "升级", "下载",
            "安装", "激活", "注册",
        ),
    },
    "other": {
        "en": (
            r"feedback", r"suggestions?",
            r"(?:leav|writ|send|submitt?|post|giv)(?:e|es|ing)? (?:a |an |my |some )?(?:\w+ )?"
            r"(?:review|opinion|comment)s?",
            r"(?:speak|talk|chat|get in touch|contact)\w* (?:to |with )?(?:a |an |some )?(?:live |real )?"
            r"(?:human|person|someone|somebody|agent|assistant|operator|representative)",
        ),
        "zh": ("建议", "點讚", "点赞", "人工"),
    },
}

#: Score weight of one matched cue per class; the highest total wins.
PROBLEM_TYPE_WEIGHTS: dict[str, int] = {"complaint": 4, "device_fault": 3, "other": 3, "consult": 1}
#: A class's score never exceeds this (many question words must not outvote one fault cue).
PROBLEM_TYPE_MAX_SCORE: dict[str, int] = {"consult": 2}
#: Classes whose cues a negation cancels ("not broken"); "don't know how to" stays a question.
NEGATABLE_PROBLEM_TYPES = frozenset({"complaint", "device_fault", "other"})

#: On a tie, the earlier class wins (a complaint outranks a fault, a fault a question).
PROBLEM_TYPE_PRIORITY: tuple[str, ...] = ("complaint", "device_fault", "other", "consult")

#: A question mark counts as this many consult points (a question without a cue word).
QUESTION_MARK_WEIGHT = 1

#: Cues for ``urgent_level``. A negated high cue ("no urgent demand", "不着急") reads as low.
URGENCY_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "high": {
        "en": (
            r"urgent(?:ly)?", r"asap", r"as soon as possible", r"right away",
            r"immediately(?! (?:after|before|when|upon|as|once))",
            r"right now", r"at once", r"straight away", r"quickly", r"(?:as )?fast as possible",
            r"quick (?:fix|response|reply|solution|help)", r"emergency", r"critical", r"hurry",
            r"in a rush", r"time[- ]sensitive", r"(?:can'?t|cannot) wait",
        ),
        "zh": (
            "紧急", "緊急", "着急", "著急", "急用", "很急", "好急", "太急", "急死", "急！", "急!",
            "急急", "尽快", "儘快", "盡快", "赶快", "赶紧", "火速",
            # "马上到期" (about to expire) and "立刻充值了" (I topped up at once) are narrative:
            # these count only before a request for action.
            r"(?:马上|馬上|立刻|立即)(?:帮|给|处理|解决|回复|联系|维修|修|退|安排|核实|查)",
            "加急", "十万火急",
        ),
    },
    "low": {
        "en": (
            r"whenever", r"when(?:ever)? you (?:have|get) (?:the )?(?:time|a chance)",
            r"at your (?:convenience|leisure)", r"take your time", r"low priority",
            r"not (?:a )?(?:big )?(?:deal|priority)",
        ),
        "zh": ("不急", "不用急", "不着急", "不紧急", "有空再", "有时间再", "慢慢来", "不赶时间"),
    },
}

#: Words that negate the cue right after them: English within the last three words of the
#: clause, Chinese as the one or two characters just before the cue. English contractions are of
#: ASCII letters only: the cue's lookbehind then keeps a long run of letters from being tried at
#: each of its characters.
NEGATION_EN = (
    r"(?:no|not|never|without|nothing|none|nobody|hardly|[A-Za-z]+n't|dont|cant|wont|didnt|doesnt|isnt"
    r"|wasnt|arent|couldnt|wouldnt|havent|hasnt)"
)
NEGATION_ZH = ("不", "没", "沒", "无", "無", "未", "别", "非")
#: Chinese character pairs that start with a negator but do not negate ("不停重启" = keeps rebooting).
NEGATION_ZH_EXCEPTIONS = ("不停", "不断", "不斷", "不了", "不能", "无法", "無法")

#: Explicit "the model is X" cues; the value that follows is read by :data:`MODEL_VALUE_EN`.
MODEL_CUES_EN = (
    r"(?:device |product |phone )?model(?: number| no\.?| name)?\s*(?:is|:|=|#|-)\s*",
    r"(?:device |product |phone )?model\s+(?=[A-Za-z]*\d)",
)
MODEL_CUES_ZH = ("型号是", "型号为", "型号：", "型号:", "型号", "型號是", "型號")
#: A model value: starts with a letter or digit, up to 40 characters of name-like text.
MODEL_VALUE_EN = r"[A-Za-z0-9][A-Za-z0-9\-+_./ ]{0,40}"
#: After 型号: an optional Chinese brand (``BRAND`` stands for :data:`MODEL_BRANDS_ZH`), then Latin.
MODEL_VALUE_ZH = r"(?:BRAND\s*)?[A-Za-z0-9][A-Za-z0-9\-+_. ]{0,30}"
#: Words that end a captured model value ("model is Watch S1 and it ..." -> "Watch S1").
MODEL_STOP_WORDS = frozenset((
    "and", "but", "with", "which", "that", "it", "its", "i", "im", "my", "is", "was", "the", "a",
    "an", "so", "or", "since", "because", "for", "from", "on", "in", "at", "to", "no", "not",
    "it's", "doesn't", "won't", "can't", "cannot", "please", "phone", "device",
))
#: Captured values meaning "no model given".
MODEL_UNKNOWN_VALUES = (
    "unknown", "not sure", "unsure", "no idea", "n/a", "na", "none", "null", "unclear", "what",
    "不知道", "不清楚", "忘了", "不记得", "什么", "多少", "哪", "未知",
)
#: Brands and product lines that start a model name when a number follows.
MODEL_BRANDS_EN = (
    "Xiaomi", "Redmi", "POCO", "Mi", "Mijia", "Huawei", "Honor", "iPhone", "iPad", "MacBook",
    "Galaxy", "Samsung", "Pixel", "OnePlus", "OPPO", "vivo", "Nokia", "Lenovo", "ThinkPad", "Meizu",
    "Coolpad", "ZTE", "Nubia", "Smartisan", "Motorola", "Moto", "Sony Xperia", "Xperia", "Kindle",
    "Surface", "Lumia", "Nexus", "Realme", "Roborock", "Dreame",
)
#: Product-line words, matched only when capitalised ("Watch S1", not "watch 3 films").
MODEL_LINES_EN = ("Watch", "Band", "Buds", "Pad", "Note", "Book", "Mate", "Nova", "Mix", "Civi", "TV")
MODEL_BRANDS_ZH = (
    "小米", "红米", "紅米", "华为", "華為", "荣耀", "榮耀", "苹果", "魅族", "酷派", "中兴", "联想",
    "三星", "努比亚", "一加", "坚果", "锤子",
)
#: The number part of a model name, then optional suffix words ("14 Pro", "S23 Ultra", "4s").
MODEL_NUMBER = r"(?!(?i:os|ios|v|version)\s*\d)[A-Za-z]{0,3}\d{1,4}[A-Za-z]{0,2}\+?"
MODEL_SUFFIXES = r"(?:\s*(?:Pro\+?|Max|Ultra|Plus|Lite|Mini|SE|5G|Turbo|Neo|Edge|Prime|Series))*"

#: Phrases that introduce a requirement ("hope to solve quickly", "希望尽快处理"); ``zh`` literal.
REQUIREMENT_CUES_EN = (
    r"hope", r"hoping", r"wish", r"want", r"wanted", r"wanna", r"need", r"needs", r"please", r"pls",
    r"would like", r"'d like", r"could you", r"can you", r"help me", r"expect", r"require",
    r"request", r"ask(?:ing)? for", r"let me know", r"tell me", r"fix", r"solve", r"resolve",
    r"replace", r"repair",
)
REQUIREMENT_CUES_ZH = (
    "希望", "想", "我要", "请", "請", "需要", "要求", "麻烦", "麻煩", "帮我", "幫我", "帮忙", "能否",
    "能不能", "可不可以", "给我", "解决", "处理", "求",
)
#: Words stripped from the start of a requirement ("and hope ..." -> "hope ...").
REQUIREMENT_LEADING_FILLERS = (
    r"^(?:(?:and|but|so|then|also|oh|well|hi|hello|dear)\b|而且|但是|所以|然后|还有|另外)\s*"
)
MAX_REQUIREMENTS = 5
MAX_REQUIREMENT_CHARS = 120
#: Only this much customer text is read (a very long paste is mostly noise).
MAX_TEXT_CHARS = 20_000

#: Preferred enum members when a custom schema field has to be filled without evidence.
NEUTRAL_ENUM_MEMBERS = ("other", "unknown", "none", "neutral", "normal", "medium", "unspecified", "n/a")
