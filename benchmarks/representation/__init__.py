"""Is the streaming representation gap exact, fast at LLM width, and robust under load?"""
