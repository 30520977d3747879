"""vigil.net"""
