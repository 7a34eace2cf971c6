"""The published numbers our results tables sit next to: the paper's Table 1 (large pretrained
models zero-shot and fine-tuned, small models, ground truth) and Table 3 (CORAL with each reward x policy), per dataset. CORAL rows are the
paper's means over 5 runs; None = not reported (NA)."""

from __future__ import annotations

COLUMNS = ("avg_len", "BLEU", "METEOR", "Dist-1", "Dist-2", "MAUDE-ESIM", "MAUDE-BERT")
COLUMN_TITLES = {"avg_len": "Avg. Len"}


def _rows(table: dict[str, tuple]) -> dict[str, dict[str, float | None]]:
    return {name: dict(zip(COLUMNS, values)) for name, values in table.items()}


PAPER_TABLES: dict[str, dict] = {
    "dailydialog": {
        "source": "CORAL paper, Table 1 (DailyDialog) and Table 3 (DailyDialog)",
        "rows": _rows({
            "ground-truth": (11.97, None, None, 0.0681, 0.4061, 0.8180, 0.8603),
            "dialogpt-zs": (8.89, 0.0667, 0.0445, 0.0415, 0.1682, 0.6327, 0.6016),
            "dialogrpt-zs": (15.94, 0.0809, 0.0530, 0.0273, 0.1192, 0.6523, 0.6055),
            "blenderbot-zs": (17.27, 0.1049, 0.0771, 0.0223, 0.0977, 0.6363, 0.6322),
            "dialogpt-ft": (6.15, 0.0752, 0.0678, 0.0673, 0.2957, 0.7878, 0.7831),
            "dialogrpt-ft": (16.55, 0.1073, 0.0978, 0.0353, 0.1791, 0.8086, 0.8317),
            "blenderbot-ft": (30.70, 0.1139, 0.1081, 0.0355, 0.1984, 0.8222, 0.8249),
            "mirror": (7.93, 0.0618, 0.0538, 0.0371, 0.1485, 0.6223, 0.4995),
            "adalabel": (11.59, 0.1208, 0.0881, 0.0381, 0.2292, 0.5814, 0.4890),
            "coral-esim-off": (10.00, 0.1910, 0.1727, 0.0459, 0.2840, 0.7402, 0.6474),
            "coral-bert-off": (9.68, 0.1838, 0.1656, 0.0462, 0.2902, 0.7279, 0.6526),
            "coral-dmi-off": (9.44, 0.1727, 0.1567, 0.0461, 0.2844, 0.7229, 0.6234),
            "coral-esim-mix": (11.01, 0.2118, 0.1970, 0.0397, 0.2541, 0.7577, 0.6588),
            "coral-bert-mix": (10.50, 0.2241, 0.2079, 0.0428, 0.2760, 0.7418, 0.6692),
            "coral-dmi-mix": (10.91, 0.2327, 0.2190, 0.0433, 0.2635, 0.7410, 0.6680),
        }),
    },
    "ubuntu": {
        "source": "CORAL paper, Table 1 (DSTC7-Ubuntu) and Table 3 (DSTC7-Ubuntu)",
        "rows": _rows({
            "ground-truth": (13.73, None, None, 0.0922, 0.5231, 0.8583, 0.7363),
            "dialogpt-zs": (8.59, 0.0565, 0.0369, 0.0504, 0.1723, 0.7058, 0.6557),
            "dialogrpt-zs": (14.17, 0.0714, 0.0424, 0.0351, 0.1333, 0.7328, 0.6813),
            "blenderbot-zs": (17.78, 0.0869, 0.0571, 0.0266, 0.0893, 0.5683, 0.5294),
            "dialogpt-ft": (6.22, 0.0527, 0.0459, 0.1101, 0.4017, 0.8210, 0.6610),
            "dialogrpt-ft": (13.63, 0.0902, 0.0628, 0.0710, 0.3219, 0.8731, 0.7485),
            "blenderbot-ft": (16.98, 0.1210, 0.0905, 0.0788, 0.3821, 0.8237, 0.7800),
            "mirror": (6.19, 0.0299, 0.0387, 0.0068, 0.0145, 0.5121, 0.4926),
            "adalabel": (15.70, 0.2022, 0.1824, 0.0539, 0.3099, 0.7929, 0.7046),
            "coral-esim-off": (10.28, 0.1729, 0.1581, 0.0744, 0.4242, 0.8590, 0.7600),
            "coral-bert-off": (10.53, 0.0949, 0.0724, 0.0694, 0.4093, 0.8534, 0.8108),
            "coral-dmi-off": (10.39, 0.2194, 0.2111, 0.0707, 0.4151, 0.8274, 0.7309),
            "coral-esim-mix": (8.54, 0.1342, 0.1219, 0.0716, 0.4038, 0.8691, 0.7534),
            "coral-bert-mix": (12.42, 0.0970, 0.0676, 0.0630, 0.3616, 0.8787, 0.8477),
            "coral-dmi-mix": (6.93, 0.0904, 0.0779, 0.0729, 0.3848, 0.8628, 0.7913),
        }),
    },
}
