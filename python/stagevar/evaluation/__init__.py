"""Quality evaluation: ``stagevar eval`` (fidelity of schedules and peers to vanilla), prompt sources and output
layouts of the GenEval and DPG-Bench evaluators, and data-parallel generation under ``torchrun``.

Modules: :mod:`.metrics` (PSNR, SSIM, frequency-band error, CLIP score), :mod:`.prompts` (prompt sources),
:mod:`.layouts` (atomic writers of the evaluators' folder layouts), :mod:`.distributed` (sharding and merging
across ranks), :mod:`.command` (the subcommand).
"""
