"""Worked examples of user extensions: plug them in from a config by ``class_path: callbacks.<module>.<Class>``
(run from the repository root, or put this folder on PYTHONPATH). None of them touches the package."""
