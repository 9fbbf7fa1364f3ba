"""Task modules: each knows its head, metrics and post-processing."""
