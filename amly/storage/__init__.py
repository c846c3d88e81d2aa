"""Where photos live besides local folders: object storage (S3 and compatibles)."""
