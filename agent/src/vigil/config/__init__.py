"""vigil.config"""
