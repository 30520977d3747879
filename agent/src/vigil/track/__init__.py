"""vigil.track"""
