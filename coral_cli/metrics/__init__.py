"""The paper's automatic metrics (§4.4, Table 1): Avg. Len, BLEU, METEOR, Dist-1/2, MAUDE-style
retriever scores; plus self-BLEU for multi-sample predictions."""
