"""vigil.ipvs.checkers: real-server health checks (keepalived's checker process).

The pure scheduling and state core is :mod:`.core`, the settings of each checker kind
:mod:`.settings`; the asyncio engine that runs thousands of them is :mod:`.engine`.
"""
