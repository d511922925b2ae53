"""Opening a notebook must not modify it: JupyterLab marks a notebook dirty when the kernel
it starts reports metadata (the kernelspec's display name) other than what the file
stores, and a learner then sees an unsaved change they never made."""
from __future__ import annotations

import pytest

from test_jupyterlab import open_notebook

#: One of each kind of generated notebook: a lesson, an exercise stub, an executed solution.
NOTEBOOKS = ["notebooks/02_channel_attention.ipynb", "exercises/04_shuffle.ipynb", "solutions/04_shuffle.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_a_notebook_just_opened_shows_no_unsaved_change(page, lab, screenshot, notebook):
    name = "opened-" + notebook.replace("/", "-").removesuffix(".ipynb")
    open_notebook(page, lab, notebook, name)
    page.wait_for_timeout(2000)            # metadata updates arrive after the kernel is idle
    screenshot(page, name)
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current")
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), \
        f"{notebook} shows as modified right after opening"
