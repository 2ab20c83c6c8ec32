"""edgetl: train on a workstation, deploy image classifiers to a Raspberry Pi or a Jetson."""

__version__ = "0.1.0"
