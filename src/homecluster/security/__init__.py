"""Keeping the household cluster private: the certificates of its mutual TLS (certs.py)."""
