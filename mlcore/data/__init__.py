"""Data: the Oxford-IIIT Pet archive format, its download, a synthetic stand-in, validation and shards."""
