"""``python -m istd_kernels.tools.gpu_check``: validate and benchmark a GPU machine in one command.

Steps, each time-boxed, each result written to ``report.json`` as soon as its step ends:

1. environment (GPU, driver, versions, extensions; builds ``_cuda`` or installs ``--prebuilt``),
2. correctness (the ``cuda``-marked tests, then compute-sanitizer on one small call of every
   kernel),
3. performance (LCRNet, RRCA-Net, HLKConv/depthwise at LCRNet's levels, labelling and metrics,
   each against its baseline measured in the same run),
4. the report (``report.json``, ``report.md``, ``speedups.png``).

The exit status is 0 only when every correctness check ran and passed. ``--dry-run`` prints
the plan; ``--cpu-smoke`` runs steps 3-4 at tiny sizes on the CPU; ``--build-only`` builds the
extensions for sm_86/sm_90 on a CPU machine for ``--prebuilt``; ``--machine`` is the lent GPU
machine's one command: ``pip install -e .`` of the checkout first, everything in 540 s, four
files in ``--out``. See docs/gpu.md.

``worker.py`` runs a step in its own interpreter (started by file path, so that it imports only
what the step needs): a step that hangs is killed at its budget and a CUDA fault in one step
cannot take the next ones down.
"""
