"""The network client: HTTP transport, the one retry policy, rate limiters, auth, upload,
search/tiles enumeration and downloads."""
