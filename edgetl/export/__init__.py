"""The export stage: conversion and quantization, the int8 fallback ladder, QAT, metadata
embedded in model files, TFLite compaction, and validation of a bundle."""
