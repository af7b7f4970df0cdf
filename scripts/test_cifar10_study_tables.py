"""Tests of scripts/cifar10_study_tables.py: its Welch t test against published t-table values,
and its tables and differences over the committed study results.

    python3 -m unittest discover -s scripts -p 'test_*.py'
"""
import contextlib
import io
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cifar10_study_tables as tables  # noqa: E402

RESULTS = os.path.join(
    os.path.dirname(__file__), "..", "docs", "results", "cifar10", "study.results.jsonl"
)


class WelchTest(unittest.TestCase):
    def test_p_at_the_t_tables_critical_values(self):
        # t_{0.975, df} from any t table: two-sided p = 0.05 there.
        for df, t in [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)]:
            self.assertAlmostEqual(tables.t_p(t, df), 0.05, places=3, msg=f"df {df}")
        # t_{0.995, 4} = 4.604: p = 0.01.
        self.assertAlmostEqual(tables.t_p(4.604, 4), 0.01, places=4)

    def test_welch_of_two_samples(self):
        # Equal variances and sizes: t = −3 / sqrt(2/3), df = 4 (Welch–Satterthwaite) → p 0.0213.
        se, p = tables.welch([1, 2, 3], [4, 5, 6])
        self.assertAlmostEqual(se, (2 / 3) ** 0.5, places=9)
        self.assertAlmostEqual(p, 0.02131, places=4)
        self.assertAlmostEqual(tables.welch([1, 2, 3], [1, 2, 3])[1], 1.0, places=9)
        # No spread on either side: the means alone decide.
        self.assertEqual(tables.welch([1, 1], [1, 1]), (0.0, 1.0))
        self.assertEqual(tables.welch([2, 2], [1, 1]), (0.0, 0.0))

    def test_a_difference_beyond_twice_its_se_with_p_above_005_is_weak(self):
        # d = 2.2 and SE = 1 (each side's sample variance 1.5 over 3 seeds), df 4: p ≈ 0.093.
        a, b = [2.2 - 1.2247, 2.2, 2.2 + 1.2247], [-1.2247, 0.0, 1.2247]
        self.assertIn("beyond noise, weak", tables.difference(a, b))
        self.assertIn("(beyond noise, 2SE", tables.difference([x + 3 for x in a], b))
        self.assertIn("within noise", tables.difference([x - 1 for x in a], b))
        self.assertIn("one seed", tables.difference([1.0], b))


class CommittedResults(unittest.TestCase):
    def test_tables_and_differences_come_out_of_the_committed_results(self):
        rows = [json.loads(line) for line in open(RESULTS) if line.strip()]
        for args in ([RESULTS], ["--compare", RESULTS]):
            out = io.StringIO()
            argv, sys.argv = sys.argv, ["cifar10_study_tables.py", *args]
            try:
                with contextlib.redirect_stdout(out):
                    tables.main()
            finally:
                sys.argv = argv
            text = out.getvalue()
            self.assertIn("| random | 0.10 |", text)
            self.assertGreater(len(text.splitlines()), 20)
        self.assertGreater(len(rows), 200)


if __name__ == "__main__":
    unittest.main()
