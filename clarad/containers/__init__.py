"""Clara's container operators, run through a local OCI runtime (podman, else docker).

    engine.py     which runtime: the setting, what is installed and answers (logged at start)
    spec.py       a container operator's paths, environment and ``run`` / ``stop`` / ``rm`` command lines (pure)
    gpus.py       the granted GPUs as device arguments: CDI names, or /dev/nvidia* nodes (pure)
    run.py        running one: the image checked, started, stopped, removed (I/O)
    leftovers.py  at start-up: the containers a previous clarad of this state directory left
"""
