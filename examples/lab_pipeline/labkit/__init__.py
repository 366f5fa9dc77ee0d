"""The lab pipeline's own code, one module per job: the synthetic scene (``scene``), video
files (``video``), keypoint detection and identity tracking (``tracking``), ``.slp`` files and
pose arithmetic (``poses``), measures (``measures``), figures (``figures``), the lab's
database (``labdb``) and file transfer (``transfer``). The tasks in ``pipeline.py`` call them."""
