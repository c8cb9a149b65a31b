"""The dashboard's pages and form actions, one module per page like `app/api/routes`."""
