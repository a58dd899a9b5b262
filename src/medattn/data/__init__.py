"""Data: readers for ISIC 2017/2018/2019, HAM10000, derm7pt, MedMNIST, folders and CSV tables, the synthetic
dermoscopy set, and batch transforms."""
from ._registry import DataError, list_readers, load_split, register_reader
from .dataset import UNLABELED, ImageDataset

__all__ = ["DataError", "ImageDataset", "UNLABELED", "list_readers", "load_split", "register_reader"]
