"""Turning the task and its history into the next candidate: the model's prompt, litellm, replay."""
