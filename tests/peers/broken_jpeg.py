# Writes a JPEG Baseline instance whose one fragment is not a JPEG stream: what a renderer must
# refuse with a reason. Usage: broken_jpeg.py OUT.dcm STUDY_UID; prints the series and SOP UIDs.
import sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

ds = Dataset()
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
ds.StudyInstanceUID, ds.SeriesInstanceUID = sys.argv[2], generate_uid()
ds.Modality, ds.PatientID, ds.PatientName = "OT", "BROKEN1", "Broken^Pixels"
ds.Rows, ds.Columns = 16, 16
ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
ds.PixelData = encapsulate([b"\xff\xd8 this is not a JPEG stream at all \xff\xd9"])
ds["PixelData"].VR = "OB"
ds.save_as(sys.argv[1], enforce_file_format=True)
print(ds.SeriesInstanceUID, ds.SOPInstanceUID)
