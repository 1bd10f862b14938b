"""The reference evaluator: MCQA and open-ended runs over pb-build releases or the official layout.

Modules, one job each:

* ``sources``: official names, the paper's aliases, and resolving ``--source``;
* ``data``: episodes to evaluate, from a release or an official-layout folder, kept-id lists;
* ``importers``: official records -> episodes, one importer per source (the inverse of its export);
* ``prompts``: the MCQA prompt exactly as the official ``apply_multi_choice_template``, hints, OEG prompts, and
  the §4.3 variants (CoT, in-context examples, conversation history);
* ``oeg``: the official valid-answer strings for the open-ended judge;
* ``policies``: scripted answers (oracle, random, proactive, abstain, first) for checking a release;
* ``runner``: the batched step loop over many episodes and the per-episode trajectories;
* ``run``: one run end to end and its run folder (run.json, trajectories, summary), the judge's second pass;
* ``backends``: Hugging Face transformers models (``AutoModelForImageTextToText``);
* ``api``: OpenAI-compatible chat-completions servers (OpenAI, vLLM, SGLang);
* ``deciders``: what answers a run (policy, API, model), rebuilt from plain data in worker processes;
* ``parallel``: data-parallel worker processes (one per GPU) and the merge of their run folders;
* ``images``: images prepared per family as the official scripts do (Qwen: ``smart_resize``);
* ``reward``: the paper's GRPO reward with TRL's ``reward_funcs`` signature;
* ``judge``: the OEG judge prompt, its parsing and a causal-LM judge;
* ``metrics``: acc/psr (MCQA) and cc/ps/agg (OEG) per source and averaged, as in the paper;
* ``filter`` and ``train_split``: the paper's filtering step and training split;
* ``tiny``: tiny random vision-language models built from configs (tests, benchmarks, dry runs);
* ``cli``: the ``eval``, ``judge``, ``filter`` and ``train-split`` commands.

Only ``backends``, ``judge`` and ``tiny`` import torch/transformers (the ``eval`` extra), lazily. The core
(``data`` for official layouts and releases' episodes, ``runner``, ``prompts``, ``backends``, ``api``) imports
neither ``datasets`` nor ``click`` at module import; reading a parquet release imports ``datasets``.
"""
