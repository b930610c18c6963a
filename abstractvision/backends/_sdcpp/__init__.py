"""Internals of the stable-diffusion.cpp backend: worker process, its client, option mapping."""
