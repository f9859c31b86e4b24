"""Static checks of generated code: the allow-list, line numbers, aliases, dunder escapes."""

from __future__ import annotations

import textwrap

import pytest

from lester_dagster.errors import GeneratedCodeError
from lester_dagster.rewrite.validate import Violation, check_code, validate

GOOD = textwrap.dedent(
    '''
    """A generated pipeline module (hand-written fixture in the expected style)."""

    from __future__ import annotations

    from pathlib import Path
    from typing import Any

    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from lester_dagster.frame import Frame, col
    from lester_dagster.orchestration import LesterPipeline, SourceSpec, SplitSpec

    __all__ = ["make_pipeline"]

    _ANALYZER = SentimentIntensityAnalyzer()


    def sentiment(text: str) -> float:
        return float(_ANALYZER.polarity_scores(text)["compound"])


    def prepare(customers: Frame, mails: Frame) -> Frame:
        kept = customers.filter(col("country").isin(["DE", "FR", "NL"]))
        topical = mails.filter(col("date") >= "2022-01-01")
        return (
            topical.join(kept, on="email")
            .with_column("title", col("subject").fill_null("").str.lower())
            .with_column("sentiment", sentiment, inputs=["text"])
        )


    def features() -> Any:
        return ColumnTransformer(
            [
                ("title", HashingVectorizer(n_features=64), "title"),
                ("country", OneHotEncoder(handle_unknown="ignore"), ["country"]),
                ("len", StandardScaler(), ["title_words"]),
            ]
        )


    def label(prepared: pd.DataFrame) -> pd.Series:
        values = np.where(prepared["sentiment"] < 0, 1, 0)
        return pd.Series(values, index=prepared.index, name=label.__name__)


    def make_pipeline(data_dir: Path) -> LesterPipeline:
        data_dir = Path(data_dir)
        return LesterPipeline(
            name="complaints_rewrite",
            sources={
                "customers": SourceSpec(data_dir / "customers.csv", key="customer_id"),
                "mails": SourceSpec(data_dir / "mails.csv", key="mail_id"),
            },
            prepare=prepare,
            split=SplitSpec(by="customers", test_fraction=0.2, seed=0),
            features=features,
            label=label,
            label_inputs=("sentiment",),
            model=lambda: LogisticRegression(max_iter=1000),
        )
    '''
)


def _lines(code: str) -> list[str]:
    return code.splitlines()


def _line_of(code: str, fragment: str) -> int:
    """1-based line of the first line containing ``fragment`` (found independently)."""
    for number, line in enumerate(_lines(code), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in the code")


def test_a_realistic_pipeline_module_passes() -> None:
    assert check_code(GOOD, required_names=["make_pipeline"]) == []
    validate(GOOD, required_names=["make_pipeline"])


BAD_SNIPPETS = {
    "os.system": "import os\nos.system('rm -rf /')\n",
    "subprocess": "import subprocess\nsubprocess.run(['ls'])\n",
    "socket": "import socket\ns = socket.socket()\n",
    "from os": "from os import system\nsystem('ls')\n",
    "alias": "import os as o\no.system('ls')\n",
    "shutil": "import shutil\n",
    "pickle": "import pickle\n",
    "requests": "import requests\n",
    "urllib": "from urllib.request import urlopen\n",
    "http": "import http.client\n",
    "importlib": "import importlib\n",
    "ctypes": "import ctypes\n",
    "builtins": "import builtins\n",
    "sys": "import sys\n",
    "star": "from numpy import *\n",
    "relative": "from . import secrets\n",
    "sklearn other": "from sklearn.datasets import fetch_openml\n",
    "sklearn utils": "from sklearn import utils\n",
    "orchestration other": "from lester_dagster.orchestration import forget\n",
    "orchestration module": "import lester_dagster.orchestration\n",
    "errors": "from lester_dagster.errors import LesterError\n",
    "frame private": "from lester_dagster.frame import _private\n",
    "frame submodule": "from lester_dagster.frame.api import Frame\n",
    "pathlib other": "from pathlib import os\n",
    "__import__": "m = __import__('os')\n",
    "eval": "x = eval('1 + 1')\n",
    "exec": "exec('x = 1')\n",
    "compile": "c = compile('1', 'f', 'eval')\n",
    "open": "data = open('/etc/passwd').read()\n",
    "input": "x = input()\n",
    "breakpoint": "breakpoint()\n",
    "globals": "g = globals()\n",
    "locals": "g = locals()\n",
    "vars": "g = vars()\n",
    "setattr": "setattr(object, 'x', 1)\n",
    "delattr": "delattr(object, 'x')\n",
    "eval alias": "f = eval\n",
    "getattr computed": "name = 'sys'\nx = getattr(object, name)\n",
    "getattr dunder": "x = getattr(object, '__subclasses__')\n",
    "getattr alias": "g = getattr\n",
    "dunder class": "x = ().__class__.__bases__[0].__subclasses__()\n",
    "dunder globals": "def f():\n    pass\n\n\ng = f.__globals__\n",
    "dunder builtins": "b = __builtins__\n",
    "format string": "s = '{0.__class__}'.format(1)\n",
    "to_csv": "import pandas as pd\npd.DataFrame().to_csv('out.csv')\n",
    "to_pickle": "import pandas as pd\npd.DataFrame().to_pickle('x.pkl')\n",
    "read_pickle": "import pandas as pd\ndf = pd.read_pickle('x.pkl')\n",
    "pd.read_csv": "import pandas as pd\ndf = pd.read_csv('data.csv')\n",
    "from pandas read": "from pandas import read_csv\n",
    "np.save": "import numpy as np\nnp.save('x.npy', np.zeros(3))\n",
    "np.load": "import numpy as np\nx = np.load('x.npy')\n",
    "numpy alias load": "import numpy as xx\nx = xx.load('x.npy')\n",
    "from numpy load": "from numpy import load as ld\n",
    "np.lib": "import numpy as np\nnp.lib.npyio.savetxt('x', [])\n",
    "np private": "import numpy as np\nx = np._core\n",
    "scipy beyond sparse": "import scipy.sparse\nscipy.io.savemat('x.mat', {})\n",
    "save_npz": "import scipy.sparse\nscipy.sparse.save_npz('x.npz', None)\n",
    "path read": "from pathlib import Path\ntext = Path('x.txt').read_text()\n",
    "path write": "from pathlib import Path\nPath('x.txt').write_text('leak')\n",
    "path home": "from pathlib import Path\nh = Path.home()\n",
    "module attribute os": "import pandas as pd\nx = pd.core.common.os\n",
    "pandas eval": "import pandas as pd\nx = pd.eval('1 + 1')\n",
    "query": "import pandas as pd\nx = pd.DataFrame().query('a > 1')\n",
    "url": "source = 'https://example.com/data.csv'\n",
    "file url": "source = 'file:///etc/passwd'\n",
    "absolute path": "source = '/etc/passwd'\n",
    "home path": "source = '~/.ssh/id_rsa'\n",
    "parent path": "source = '../../secrets.csv'\n",
    "syntax": "def broken(:\n    pass\n",
}


@pytest.mark.parametrize("case", sorted(BAD_SNIPPETS))
def test_forbidden_code_is_refused_with_its_line(case: str) -> None:
    # pad the snippet with harmless lines so the line numbers are not trivially 1
    code = "from __future__ import annotations\n\nimport math\n" + BAD_SNIPPETS[case]
    violations = check_code(code)
    assert violations, f"{case} was not refused"
    offending = BAD_SNIPPETS[case].splitlines()
    expected_lines = {
        number
        for number, line in enumerate(_lines(code), start=1)
        if number > 3 and line in offending
    }
    for violation in violations:
        assert isinstance(violation, Violation)
        assert violation.line in expected_lines, (case, violation)
        assert violation.source == _lines(code)[violation.line - 1].strip()
        assert violation.message


def test_validate_lists_every_violation_with_line_and_source() -> None:
    code = "import math\nimport os as o\nx = math.pi\no.system('ls')\ny = eval('2')\n"
    with pytest.raises(GeneratedCodeError) as error:
        validate(code)
    message = str(error.value)
    for fragment in ("import os as o", "o.system('ls')", "y = eval('2')"):
        assert f"line {_line_of(code, fragment)}:" in message
        assert fragment in message
    assert "x = math.pi" not in message
    assert "3 violations" in message


def test_os_system_via_alias_is_refused_at_the_import() -> None:
    code = "import numpy as np\nimport os as np2\nnp2.system('ls')\n"
    lines = {v.line for v in check_code(code)}
    assert _line_of(code, "import os as np2") in lines


def test_allowed_paths_admit_absolute_paths_under_them() -> None:
    code = "from pathlib import Path\nsource = Path('/data/sample/customers.csv')\n"
    assert check_code(code, allowed_paths=["/data/sample"]) == []
    refused = check_code(code, allowed_paths=["/data/other"])
    assert [v.rule for v in refused] == ["path"]
    escaping = "from pathlib import Path\nsource = Path('/data/sample/../../etc/passwd')\n"
    assert [v.rule for v in check_code(escaping, allowed_paths=["/data/sample"])] == ["path"]


def test_required_names_are_checked() -> None:
    code = "import math\n\n\ndef prepare(x):\n    return x\n\n\nLABEL = 1\n"
    assert check_code(code, required_names=["prepare", "LABEL"]) == []
    violations = check_code(code, required_names=["prepare", "make_pipeline"])
    assert [v.rule for v in violations] == ["contract"]
    assert "make_pipeline" in violations[0].message
    assert "prepare" in violations[0].message  # says what the module does define


def test_harmless_lookalikes_pass() -> None:
    code = textwrap.dedent(
        '''
        """Docstrings may mention __init__ and /absolute/paths."""
        import re
        import numpy as np
        import pandas as pd

        PATTERN = re.compile(r"complaint|bank account")
        words = "a b".split()
        x = np.random.default_rng(0).normal(size=3)
        frame = pd.DataFrame({"a": [1]}).rename(columns={"a": "b"})
        value = getattr(frame, "columns")
        name = "country__DE"


        class Scaler:
            def __init__(self) -> None:
                super().__init__()
                self.name = type(self).__name__
        '''
    )
    assert check_code(code) == []


def test_code_must_be_text() -> None:
    with pytest.raises(TypeError, match="code must be a str"):
        check_code(b"import os")  # type: ignore[arg-type]
