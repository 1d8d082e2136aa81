"""What several collectors share: HTTP paging, backup locations, PostgreSQL, tickets and restore results."""
