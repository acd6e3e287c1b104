"""A marimo app with a lenswidget AttentionGrid (used by tests/e2e/test_marimo_e2e.py)."""

import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo

    import lenswidget
    from lenswidget import models

    lens = lenswidget.Lens(models.toy())
    grid = mo.ui.anywidget(lens.attention("the cat sat on the mat and the dog ran home . the cat sat on the mat"))
    grid
    return


if __name__ == "__main__":
    app.run()
