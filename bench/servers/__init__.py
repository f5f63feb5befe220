"""Servers the benchmarks and the tests start on 127.0.0.1: our own two services (`services`), Milvus (`milvus`),
an S3 server (`seaweed`), all on the process handling of `process`."""
