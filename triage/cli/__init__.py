"""The command line: ``triage`` and its commands (:mod:`.main`), the demo with its sample
conversations (:mod:`.demo`), ``triage db`` (:mod:`.db_commands`), and stopping child processes
(:mod:`.processes`)."""
