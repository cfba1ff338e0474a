"""HTTP routes of the api service; each module is one router."""
