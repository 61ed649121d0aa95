"""SigmaHQ rules, unmodified (written in their upstream format), against SigmaHQ's own regression
recordings (../shared/telemetry/public/sigma-regression-data): each must match exactly the
match_count its info.yml states, with the matched event checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_sigma_t1046 import evtx_events

from harness.detect.sigma import SigmaDetector

REGRESSION = (Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
              / "sigma-regression-data" / "regression_data" / "rules" / "windows")

PUA_ADVANCED_PORT_SCANNER = r"""
title: PUA - Advanced Port Scanner Execution
id: 54773c5f-f1cc-4703-9126-2f797d96a69d
status: test
description: Detects the use of Advanced Port Scanner.
references:
    - https://github.com/3CORESec/MAL-CL/tree/master/Descriptors/Other/Advanced%20Port%20Scanner
author: Nasreddine Bencherchali (Nextron Systems)
date: 2021-12-18
modified: 2023-02-07
tags:
    - attack.discovery
    - attack.t1046
    - attack.t1135
logsource:
    category: process_creation
    product: windows
detection:
    selection_img:
        - Image|contains: '\advanced_port_scanner'
        - OriginalFileName|contains: 'advanced_port_scanner' # Covers also advanced_port_scanner_console.exe
        - Description|contains: 'Advanced Port Scanner'
    selection_cli:
        CommandLine|contains|all:
            - '/portable'
            - '/lng'
    condition: 1 of selection_*
falsepositives:
    - Legitimate administrative use
    - Tools with similar commandline (very rare)
level: medium
"""

ADVANCED_IP_SCANNER_FILE = r"""
title: Advanced IP Scanner - File Event
id: fed85bf9-e075-4280-9159-fbe8a023d6fa
related:
    - id: bef37fa2-f205-4a7b-b484-0759bfd5f86f
      type: derived
status: test
description: Detects the use of Advanced IP Scanner. Seems to be a popular tool for ransomware groups.
references:
    - https://news.sophos.com/en-us/2019/12/09/snatch-ransomware-reboots-pcs-into-safe-mode-to-bypass-protection/
author: '@ROxPinTeddy'
date: 2020-05-12
modified: 2022-11-29
tags:
    - attack.discovery
    - attack.t1046
logsource:
    category: file_event
    product: windows
detection:
    selection:
        TargetFilename|contains: '\AppData\Local\Temp\Advanced IP Scanner 2'
    condition: selection
falsepositives:
    - Legitimate administrative use
level: medium
"""

FINDSTR_RECON_PIPE = r"""
title: Recon Command Output Piped To Findstr.EXE
id: ccb5742c-c248-4982-8c5c-5571b9275ad3
related:
    - id: fe63010f-8823-4864-a96b-a7b4a0f7b929
      type: derived
status: test
description: |
    Detects the execution of a potential recon command where the results are piped to "findstr".
    This is meant to trigger on inline calls of "cmd.exe" via the "/c" or "/k" for example.
references:
    - https://github.com/redcanaryco/atomic-red-team/blob/master/atomics/T1057/T1057.md#atomic-test-6---discover-specific-process---tasklist
author: Nasreddine Bencherchali (Nextron Systems), frack113
date: 2023-07-06
modified: 2024-06-27
tags:
    - attack.discovery
    - attack.t1057
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        CommandLine|contains:
            # Note: Add additional CLI to increase and enhance coverage
            - 'ipconfig*|*find'
            - 'net*|*find'
            - 'netstat*|*find'
            - 'ping*|*find'
            - 'systeminfo*|*find'
            - 'tasklist*|*find'
            - 'whoami*|*find'
    condition: selection
falsepositives:
    - Unknown
level: medium
"""

CASES = [
    ("process_creation/proc_creation_win_pua_advanced_port_scanner", PUA_ADVANCED_PORT_SCANNER,
     "Image", "advanced_port_scanner.exe"),
    ("file/file_event/file_event_win_advanced_ip_scanner", ADVANCED_IP_SCANNER_FILE,
     "TargetFilename", "Advanced IP Scanner 2\\platforms\\qwindows.dll"),
    ("process_creation/proc_creation_win_findstr_recon_pipe_output", FINDSTR_RECON_PIPE,
     "CommandLine", "tasklist | findstr powershell"),
]


@pytest.mark.parametrize(("folder", "rule", "field", "needle"), CASES, ids=[c[0].rsplit("/", 1)[-1] for c in CASES])
def test_sigmahq_rule_matches_its_regression_recording(folder: str, rule: str, field: str, needle: str) -> None:
    base = REGRESSION / folder
    info_path = base / "info.yml"
    if not info_path.exists():
        pytest.skip(f"sigma regression data not present: {base}")
    info = yaml.safe_load(info_path.read_text())
    det = SigmaDetector.from_text(rule, source=f"{folder.rsplit('/', 1)[-1]}.yml")
    assert det.rule_id == info["rule_metadata"][0]["id"]
    test = info["regression_tests_info"][0]
    events = list(evtx_events(base / Path(test["path"]).name))
    res = det.evaluate(events)
    assert len(res.rows) == test["match_count"]
    row = res.rows[0]
    assert needle in str(row[field])
    assert row["rule_title"] == info["rule_metadata"][0]["title"]
    assert events[res.source_events[0][0]].fields[field] == row[field]
