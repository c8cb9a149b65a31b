"""Who may do what: projects, API keys and their scopes, and per-project settings."""
