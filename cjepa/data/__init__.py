"""Episodes, shards and training windows."""
