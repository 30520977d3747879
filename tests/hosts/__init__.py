"""systemd-nspawn host lab for Ansible end-to-end tests (see docs/testing.md)."""
