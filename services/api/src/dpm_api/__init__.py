"""dpm api service: REST + OpenAPI, read models, authentication."""
