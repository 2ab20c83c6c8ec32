"""The models: the registry of pretrained bases and the classifier built on them."""
