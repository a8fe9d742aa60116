"""Identities: API tokens (sk-...), the admin access token, admin users, and secrets at rest."""
