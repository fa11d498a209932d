"""Machinery shared by reproduction studies: paired significance tests with multiple-
comparison correction and written-down verdict rules, and recipe-keyed model caches."""

from .significance import (VERDICT_RULE, PairedTest, bootstrap, holm, paired_t, verdict,
                           wilcoxon)

__all__ = ["PairedTest", "paired_t", "wilcoxon", "bootstrap", "holm", "verdict",
           "VERDICT_RULE"]
