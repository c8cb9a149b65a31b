"""Who may do what: projects, and their API keys and scopes."""
