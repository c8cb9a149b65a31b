"""Reference hybrid stacks that Warden instruments; each generates its own data."""
