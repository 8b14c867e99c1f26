"""radloop Streamlit app: ``streamlit run app/main.py``.

Reads the same workspace as the CLI (``$RADLOOP_WORKSPACE``, else ``./radloop-workspace``).  Each page is a
flat module ``app/page_*.py`` that only renders what :mod:`radloop.app.views` returns.  Streamlit executes
this file as a script, so everything is imported as ``radloop.app.*``.  Each run also makes sure the report
labeller is being built in the background (:func:`radloop.app.views_reports.labeler_build`, once per server).
"""

from __future__ import annotations

import streamlit as st

from radloop.app import ui, views_reports

st.set_page_config(page_title="radloop", page_icon=":material/radiology:", layout="wide")
# The Report explorer's medspacy pipeline takes 10-20 s to build: start it in the background now, once per server
# process (later runs return the same build), so that the first visit of that page rarely waits; never blocks.
views_reports.labeler_build()

PAGES = [
    st.Page("page_overview.py", title="Overview", icon=":material/dashboard:", url_path="overview", default=True),
    st.Page("page_search.py", title="Case search", icon=":material/image_search:", url_path="search"),
    st.Page("page_reports.py", title="Report explorer", icon=":material/description:", url_path="reports"),
    st.Page("page_queue.py", title="Selection queue", icon=":material/checklist:", url_path="queue"),
    st.Page("page_rounds.py", title="Round control", icon=":material/autorenew:", url_path="rounds"),
    st.Page("page_models.py", title="Models", icon=":material/model_training:", url_path="models"),
]

navigation = st.navigation(PAGES)
ui.keep_widget_state()  # filters and picks survive a visit to another page
ui.sidebar_workspace()
navigation.run()
