"""Test support: real local stand-ins for Azure endpoints and event payload builders."""
