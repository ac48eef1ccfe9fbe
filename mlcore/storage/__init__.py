"""Object storage: a local S3 server for laptops and CI, and the DVC remote that points at it."""
