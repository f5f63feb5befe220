"""The face index on Milvus (a server, or milvus-lite embedded): `index.MilvusFaceIndex` and its parts."""
