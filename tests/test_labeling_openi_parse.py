"""The pattern-based Open-i reader gives exactly what the XML parser gives, or steps aside for it."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from conftest import data_path

from radloop.labeling.sources import _parse_openi_fast, _parse_openi_tree, parse_openi_xml

HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<eCitation>\n   <meta type="rr"/>\n   <uId id="CXR7"/>\n'


def _doc(body: str, head: str = HEAD) -> bytes:
    return (head + "<MedlineCitation><Abstract>" + body + "</Abstract></MedlineCitation>"
            "<MeSH>\n <major>Fractures, Bone/ribs/left/healed</major>\n <major> normal </major>\n</MeSH>"
            "</eCitation>").encode("utf-8")


PLAIN = [
    '<AbstractText Label="FINDINGS">No acute disease.</AbstractText>',
    '<AbstractText Label="FINDINGS">Heart &amp; lungs &lt;normal&gt; &#39;clear&#x27; &quot;ok&quot;</AbstractText>',
    '<AbstractText Label="IMPRESSION"/><AbstractText Label="indication">Chest pain\nand cough</AbstractText>',
    '<AbstractText>Unlabelled text</AbstractText>',
    '<AbstractText Label="FINDINGS">Left rib fracture, old.</AbstractText>'
    '<AbstractText Label="FINDINGS">Repeated label: the last wins</AbstractText>',
]
UNUSUAL = [  # shapes the patterns do not cover: the XML parser reads them
    '<AbstractText Label="FINDINGS">Mass <b>in</b> the left lung</AbstractText>',
    '<AbstractText Label="FINDINGS"><![CDATA[a < b]]></AbstractText>',
    '<AbstractText Label="FINDINGS" Other="x">Two attributes</AbstractText>',
    '<!-- a comment --><AbstractText Label="FINDINGS">x</AbstractText>',
    '<AbstractText Label="FINDINGS">CRLF\r\nline</AbstractText>',
    '<uId id="second"/><AbstractText Label="FINDINGS">two ids</AbstractText>',
]


@pytest.mark.parametrize("body", PLAIN)
def test_plain_documents_take_the_fast_path_with_the_parser_result(body):
    data = _doc(body)
    assert _parse_openi_fast(data) is not None
    assert parse_openi_xml(data, "fallback") == _parse_openi_tree(data, "fallback")


@pytest.mark.parametrize("body", UNUSUAL)
def test_unusual_documents_go_to_the_xml_parser(body):
    data = _doc(body)
    assert _parse_openi_fast(data) is None
    assert parse_openi_xml(data, "fallback") == _parse_openi_tree(data, "fallback")


def test_other_encodings_missing_ids_and_broken_xml():
    latin = _doc('<AbstractText Label="FINDINGS">caf\u00e9</AbstractText>',
                 head=HEAD.replace("utf-8", "iso-8859-1")).decode("utf-8").encode("latin-1")
    assert _parse_openi_fast(latin) is None
    assert parse_openi_xml(latin, "f").sections == {"FINDINGS": "caf\u00e9"}
    no_id = _doc('<AbstractText Label="FINDINGS">x</AbstractText>', head=HEAD.replace('<uId id="CXR7"/>', ""))
    assert parse_openi_xml(no_id, "from-name").report_id == "from-name"
    broken = b'<?xml version="1.0" encoding="utf-8"?><eCitation><AbstractText Label="F">x</eCitation>'
    assert parse_openi_xml(broken, "b").error.startswith("invalid XML")


def test_every_dev_report_reads_the_same_either_way():
    tarball = data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    with tarfile.open(tarball, "r:*") as archive:
        documents = [(archive.extractfile(member).read(), Path(member.name).stem)
                     for member in archive if member.isfile() and member.name.endswith(".xml")]
    assert len(documents) > 2000
    assert all(_parse_openi_fast(data) is not None for data, _ in documents)
    assert all(parse_openi_xml(data, name) == _parse_openi_tree(data, name) for data, name in documents)
