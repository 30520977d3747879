"""vigil.bfd"""
