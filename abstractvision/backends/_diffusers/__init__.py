"""Internals of the Hugging Face Diffusers backend (imported only by huggingface_diffusers)."""
