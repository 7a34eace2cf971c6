"""Human evaluation of generated replies: the CORAL paper's §5.2 Likert study (engagement,
relevance, fluency, 0/1/2 each) and ACUTE-Eval-style blind pairwise A/B comparisons.

`study` makes and reads a study folder, `answers` keeps each annotator's append-only answer log,
`screen` is the text an annotator sees, `agreement` is Krippendorff's alpha and `study_report`
the numbers. The CLI (`coral annotate`) and the Textual screen are thin clients of this package.
"""
