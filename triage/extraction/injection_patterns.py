"""The shipped injection patterns (data only): name -> regular expression.

Each pattern looks for text aimed at the model rather than at support staff: orders to drop the
instructions, fake turns, chat-template tokens, marker look-alikes, JSON answers, and attempts to
set the fields the route is computed from. The patterns are matched, in this order, against
:func:`triage.extraction.untrusted.fold` of each customer message: NFKC, case folded, no
invisible characters or accents, look-alike brackets as ASCII ``<``/``>``, full-width Chinese
punctuation as ASCII (``：`` is ``:``), every line break ``\\n``. Write new patterns for that form.
``extraction.injection_patterns`` replaces this set (see docs/hostile-input.md).

Each one must scan in time linear in the text: ``tests/test_regex_budget.py`` times every shipped pattern
on the largest message a webhook can carry, built to hurt it, and fails on a pattern that backtracks
over a run it was already tried on (start a run's pattern with a lookbehind, as ``marker`` does).

Each one is kept narrow on purpose: ``tests/test_injection.py`` holds ordinary English and
Chinese support messages (\"please ignore my previous message\", \"I turned on developer mode\",
\"系统提示：存储空间不足\") that none may match.
"""

#: Words that name the model's instructions (not the customer's own messages or a manual's).
_INSTRUCTIONS = r"(?:instructions?|prompts?|rules|guidelines|directives|system\s+(?:prompt|message)s?)"
#: Words that point at the instructions the model was given.
_THOSE = r"(?:previous|prior|above|earlier|preceding|original|initial|system|developer|your)"
#: The fields the route is computed from, and the ticket's own bookkeeping.
_TICKET_KEYS = (r"(?:route|priority|team|problem_type|urgent_level|device_model|user_requirements|sla_\w+"
                r"|extractor)")

DEFAULT_PATTERNS: dict[str, str] = {
    # <<<END CONVERSATION>>> and its look-alikes (brackets are folded to ASCII first); a run of brackets is
    # tried from its first one only, so a long run costs its length, not its square
    "marker": r"(?<!<)<<+\s*(?:end\s+)?conversation\b|\bend\s+conversation\s*>>+",
    # <|im_start|>, [INST], <<SYS>>, <system>...</system>
    "chat-template": r"<\|[a-z_]{2,20}\|>|\[/?inst\]|<</?sys>>"
                     r"|<\s*/?\s*(?:system|assistant|developer|instructions?)\s*>",
    # "ignore all previous instructions", "disregard the system prompt", "forget your rules"
    "ignore-instructions": rf"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|of|the|these|those)\s+)*"
                           rf"{_THOSE}\s+(?:\w+\s+){{0,2}}?{_INSTRUCTIONS}\b",
    # "ignore the above", "disregard everything above" (not "ignore the above e-mail")
    "ignore-the-above": r"\b(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?|everything\s+)?(?:the\s+)?above\b"
                        r"(?!\s+(?:message|e-?mail|mail|address|number|order|link|photo|picture|comment|note))",
    # "new instructions: ...", "new task: ..."
    "new-instructions": r"\bnew\s+(?:instructions?|task|system\s+prompt|directives?)\s*:",
    # "SYSTEM OVERRIDE", "Developer message:", "assistant:" at the start of a line (blanks before it on that
    # line only: a line start must not read on through every following line break)
    "fake-role": r"\b(?:system|admin|developer)\s+override\b|\b(?:system|developer|admin)\s+(?:message|instruction)s?"
                 r"\s*:|^[^\S\n]*assistant\s*:",
    # a JSON answer in the text: {"route": ..., "priority": ...}
    "json-answer": rf'"{_TICKET_KEYS}"\s*:',
    # the schema's own field names: "set urgent_level to high"
    "field-name": r"\b(?:problem_type|urgent_level|device_model|user_requirements|sla_\w+)\b",
    # route=vip, priority=P0, team=board
    "field-assignment": r"\b(?:route|priority|team|urgency|extractor)\s*:?=\s*[^\s,;.]+",
    # "priority to P0", "mark it priority P1", "escalates every ticket to P0"
    "priority-code": r"\bpriority\b[^.\n]{0,15}?\bp[0-4]\b|\b(?:to|at|as)\s+p0\b",
    # "route this ticket to the VIP team"
    "route-ticket": r"\b(?:re)?(?:route|assign)\s+(?:this|the|my)\s+(?:ticket|case|request|issue)\s+to\b",
    # "add a field", "add the fields ... to the JSON"
    "add-field": r"\badd\s+(?:(?:the|a|an|new|extra|these|two)\s+)*fields?\b",
    # "let's play a game", "pretend you are", "you are now TicketBot", "act as a support manager"
    "role-play": r"\blet[\u2019']?s\s+play\s+a\s+game\b|\bpretend\s+(?:to\s+be|you\s*(?:are|[\u2019']re))\b"
                 r"|\brole-?play\b"
                 r"|\byou\s+are\s+now\s+(?:a\s+|an\s+|the\s+)?\w*(?:bot|gpt|assistant|model|manager|supervisor|admin"
                 r"|administrator|developer)\b"
                 r"|\b(?:act|behave)\s+as\s+(?:a|an|the)\s+(?:\w+\s+)?(?:bot|ai|assistant|manager|supervisor|admin"
                 r"|administrator|developer)\b",
    # 忽略之前的所有指令, 无视系统提示词
    "zh-ignore-instructions": r"(?:忽略|无视|忽视|不要理会|别管|忘记|忘掉)[^。!?\n]{0,10}?"
                              r"(?:指令|提示词|系统提示|设定|命令)",
    # 系统指令, 开发者指令, 管理员指令
    "zh-fake-role": r"(?:系统|开发者|管理员)(?:指令|消息\s*:)",
    # 优先级设为P0, 优先级最高, 标为最高优先级
    "zh-priority": r"优先级\s*(?:设为|设置为|设成|改为|改成|调为|调成|定为|标为|是|为|=|:)?\s*(?:p[0-4]|最高)"
                   r"|(?:设为|标为|改为|调为|定为)最高优先级",
    # 路由=vip, 转给VIP团队, 升级为VIP
    "zh-route": r"路由\s*[=:]|(?:路由|转给|转交给?|分配给|派给|升级为|升级到)\s*(?:到\s*)?vip",
    # 加入字段 team=..., 添加字段
    "zh-add-field": r"(?:加入|添加|增加|加上)[^。\n]{0,4}字段",
    # 假装你是主管, 扮演, 你现在的身份是
    "zh-role-play": r"(?:假装|假设|扮演|充当)你是|你现在的身份是|从现在起你是|角色扮演",
}
