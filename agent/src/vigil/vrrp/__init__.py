"""vigil.vrrp"""
