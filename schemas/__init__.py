"""The curated raw-data schema: the contract FundusExampleGen's output must meet before Transform runs."""
import os

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schema.pbtxt')
