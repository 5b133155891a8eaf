"""The AI stack the ai-help agent uses: embedders, chunking and ingest, answers and reports."""
