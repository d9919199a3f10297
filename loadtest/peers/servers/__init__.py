"""The peer servers. Each module runs inside its framework's own venv (.peers/<peer>), with the project root on
PYTHONPATH, and does catdog's per-image work through `common.Classifier`."""
