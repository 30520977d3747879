# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Options and attributes that every vigil.ha module talking to the agent's API shares."""

from __future__ import annotations


class ModuleDocFragment:
    # The agent API options: where the socket is and how long to wait.
    DOCUMENTATION = r"""
options:
  socket:
    description:
      - Path of the vigild API Unix socket on the managed host.
      - The agent listens on V(/run/vigil/vigil.sock) unless it was started with C(--socket)
        or C(global.socket) is set in its configuration.
      - 'The module must run as root (C(become: true)) or as a user the agent allows with
        C(--api-allow-uid).'
    type: path
    default: /run/vigil/vigil.sock
  timeout:
    description:
      - How long, in seconds, the agent may take, between V(0) (exclusive) and V(300).
      - A query waits this long for the answer; when unset it waits 10 seconds.
      - A state change passes it to the agent as the verification timeout of each action and
        waits 10 seconds longer for the answer. When unset the agent uses its own default,
        for a handover twice the advertisement interval plus 1.2 seconds.
    type: float
notes:
  - The modules use the Python standard library only; the managed host needs no extra
    packages, only a running C(vigild).
seealso:
  - name: vigild local API
    description: The HTTP API on the agent's Unix socket that these modules use.
    link: https://example.invalid/vigil/docs/api.md
"""

    # Attribute descriptions; each module states its own support level.
    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check mode and predict whether it would change anything,
      without changing the agent.
  diff_mode:
    description: Returns C(diff) with what changed (or would change in check mode).
  platform:
    description: Target operating systems the module runs on.
    support: full
    platforms: posix
"""

    # For *_info modules: they never change anything.
    INFO_MODULE = r"""
attributes:
  check_mode:
    support: full
    details: This module only reads the agent's state.
  diff_mode:
    support: N/A
    details: This module only reads the agent's state.
"""
